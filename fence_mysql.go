package lockmgr

import (
	"fmt"
	"hash/crc32"
	"strings"
)

// The SQL of MySQL/MariaDB fencing: the side structures that
// migrateMySQLFences creates (see dialect.go for the statements).

// fenceTrigger is one of the triggers that give MySQL/MariaDB fences.
type fenceTrigger struct {
	name string // unquoted, without schema
	ddl  string
}

// fenceTriggerDDL is how MySQL/MariaDB fences are made: a BEFORE INSERT
// trigger on the lock table raises the high-water mark (hwm) of the
// <table>_fence bucket the name hashes to, to GREATEST(hwm + 1, the
// statement's clock reading), and makes that the row's fence. It fires
// for every insertion attempt, also one that ON DUPLICATE KEY UPDATE then
// turns into a takeover (whose VALUES(fence) sees the trigger's value) or
// into nothing (the name is held: the mark still moves, which costs a
// write but breaks nothing).
//
// On one server the bucket row's lock orders acquisitions, also across a
// release that deletes the row. On Galera, which neither replicates nor
// certifies read locks, the write does: two acquisitions of a bucket on
// different nodes write the same row, so certification fails one (error
// 1213, retried), and the later one has read the earlier's mark, whatever
// the nodes' clocks say. Rows written by Django (fence 0) or by an older
// lockmgr (a clock reading) are taken over with GREATEST(fence + 1,
// VALUES(fence)). There is deliberately no UPDATE trigger: any UPDATE
// trigger on the table makes MariaDB report insert id 0 for the renewal's
// LAST_INSERT_ID(expr), which is how the new expiry comes back.
func (d *dialect) fenceTriggerDDL() []fenceTrigger {
	bucket := " WHERE id = CRC32(NEW.name) % " + fenceBuckets
	name := d.sideName("_fence_bi")
	return []fenceTrigger{{name: name, ddl: "CREATE TRIGGER IF NOT EXISTS " + d.qualify(name) +
		" BEFORE INSERT ON " + d.table + " FOR EACH ROW BEGIN " +
		"UPDATE " + d.fenceTable + " SET hwm = GREATEST(hwm + 1, NEW.fence)" + bucket + "; " +
		"SET NEW.fence = COALESCE((SELECT hwm FROM " + d.fenceTable + bucket + "), NEW.fence); END"}}
}

// sideName names a structure of the lock table's own: <table><suffix>,
// shortened with a hash of the table's name past MySQL's 64 characters.
func (d *dialect) sideName(suffix string) string {
	bare := d.bareTable(strings.ReplaceAll(d.table, "`", ""))
	if len(bare)+len(suffix) <= 64 {
		return bare + suffix
	}
	return fmt.Sprintf("%s_%08x%s", bare[:64-len(suffix)-9], crc32.ChecksumIEEE([]byte(d.table)), suffix)
}

// fenceBare is the fence table's name without schema or quotes.
func (d *dialect) fenceBare() string {
	return d.bareTable(strings.ReplaceAll(d.fenceTable, "`", ""))
}

// qualify quotes name in the lock table's schema, if it names one.
func (d *dialect) qualify(name string) string {
	if i := strings.LastIndex(d.table, "."); i >= 0 {
		return d.table[:i+1] + "`" + name + "`"
	}
	return "`" + name + "`"
}
