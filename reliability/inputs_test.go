package reliability

import (
	"strings"
	"unicode/utf8"
)

// validNames are names lockmgr must take and give back byte for byte,
// each distinct from the others: edge lengths, SQL metacharacters and
// comment sequences, case and trailing-space neighbours, odd Unicode.
var validNames = []string{
	"a", "A", "a ", " a", "a  ", "ａ",
	strings.Repeat("x", 255),
	strings.Repeat("é", 127) + "a",  // 255 bytes, 128 runes
	strings.Repeat("😀", 63) + "abc", // 255 bytes of 4-byte runes
	"'; DROP TABLE lockmgr_lock; --", `" OR ""="`, "' OR '1'='1", "/* comment */", "-- comment", "#comment",
	`\`, `\'`, `\\`, `%`, `_`, `a%`, `a_`, "a`b", "$1", "?", ":name", "@v", "{}", "[x]",
	"\t\n\r", "\x01\x7f", "İ", "ß", "ss", "ﬀ", "\u200b", "\u202eabc", "e\u0301", "é",
	"😀", "\uFEFF", "\uFFFD",
}

// invalidNames must be refused with ErrInvalidName before any SQL runs.
var invalidNames = []string{
	"",
	strings.Repeat("x", 256),
	strings.Repeat("é", 128), // 256 bytes
	"a\x00b", "\x00", "a\x00",
	"\xff", "\xc3\x28", "\xed\xa0\x80", "\xc0\xaf", "abc\xfe",
}

// nameIsValid is lockmgr's documented rule for names.
func nameIsValid(s string) bool {
	return len(s) >= 1 && len(s) <= 255 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
