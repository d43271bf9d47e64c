package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ToTime converts a timestamp as the engines return it: microseconds since
// the epoch (PostgreSQL, MySQL), or time.Time or text (SQLite). Text
// without a zone is UTC, the way Django and lockmgr write it.
func ToTime(v any) (*time.Time, error) {
	var t time.Time
	switch x := v.(type) {
	case nil:
		return nil, nil
	case int64:
		t = time.UnixMicro(x)
	case time.Time:
		t = x
	case []byte:
		return ParseTime(string(x))
	case string:
		return ParseTime(x)
	default:
		return nil, fmt.Errorf("unexpected timestamp %T", v)
	}
	t = t.UTC()
	return &t, nil
}

var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
}

// ParseTime reads a timestamp written as text, or as microseconds since
// the epoch; text without a zone is UTC.
func ParseTime(s string) (*time.Time, error) {
	if us, err := strconv.ParseInt(s, 10, 64); err == nil {
		t := time.UnixMicro(us).UTC()
		return &t, nil
	}
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, errors.New("unreadable timestamp " + strconv.Quote(s))
}
