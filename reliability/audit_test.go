package reliability

import (
	"context"
	"fmt"
	"sort"
	"time"

	"gorm.io/gorm"
)

// occRow is the occupancy row of one name: a holder flips it from free to
// itself with a conditional UPDATE that must find it free and its fence
// lower, so two overlapping holders, or a fence going backwards, are
// caught by the database itself the moment they happen.
type occRow struct {
	Name   string `gorm:"column:name;primaryKey;size:191"`
	Holder string `gorm:"column:holder;size:96;not null;default:''"`
	Fence  int64  `gorm:"column:fence;not null"`
}

// auditRow is one hold: its name, fence, holder and start/end on the
// host's monotonic clock, shared by every process on the machine.
type auditRow struct {
	ID      int64  `gorm:"column:id;primaryKey;autoIncrement"`
	Name    string `gorm:"column:name;size:191;not null"`
	Fence   int64  `gorm:"column:fence;not null"`
	Holder  string `gorm:"column:holder;size:96;not null"`
	Kind    string `gorm:"column:kind;size:8;not null"`
	StartNs int64  `gorm:"column:start_ns;not null"`
	EndNs   int64  `gorm:"column:end_ns;not null"`
	Lost    bool   `gorm:"column:lost;not null"`
}

// createAuditTables creates the occupancy and audit tables and a free
// occupancy row (fence -1) for every name.
func createAuditTables(db *gorm.DB, occ, audit string, names []string) error {
	if err := db.Table(occ).AutoMigrate(&occRow{}); err != nil {
		return fmt.Errorf("create %s: %w", occ, err)
	}
	if err := db.Table(audit).AutoMigrate(&auditRow{}); err != nil {
		return fmt.Errorf("create %s: %w", audit, err)
	}
	for _, n := range names {
		if err := db.Table(occ).Create(&occRow{Name: n, Fence: -1}).Error; err != nil {
			return fmt.Errorf("seed %s: %w", occ, err)
		}
	}
	return nil
}

// hold records one hold of name with fence: occupy, wait d (or until the
// scope's context ends), vacate, append to the audit table. It reports
// whether the scope was lost meanwhile.
func (w *tortureWorker) hold(ctx context.Context, name string, fence int64, kind string, scope context.Context, d time.Duration) bool {
	start := monoNow()
	holder := fmt.Sprintf("%s#%d", w.id, fence)
	occupied := w.occupy(ctx, name, holder, fence)
	lost := waitHold(scope, d)
	end := monoNow()
	if occupied {
		w.vacate(ctx, name, holder)
	}
	row := auditRow{Name: name, Fence: fence, Holder: holder, Kind: kind, StartNs: start, EndNs: end, Lost: lost}
	if err := w.db.WithContext(ctx).Table(w.cfg.AuditTable).Create(&row).Error; err != nil {
		w.box.harnessErr("audit insert", err)
		return lost
	}
	w.box.update(func(s *tortureStats) {
		s.Holds++
		s.ByKind[kind]++
		if lost {
			s.Lost++
		}
	})
	return lost
}

// waitHold waits d, or less when the scope's context ends first; it
// reports whether the scope was lost.
func waitHold(scope context.Context, d time.Duration) bool {
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		if scope == nil {
			<-timer.C
		} else {
			select {
			case <-timer.C:
			case <-scope.Done():
			}
		}
	}
	return scope != nil && scope.Err() != nil
}

func (w *tortureWorker) occupy(ctx context.Context, name, holder string, fence int64) bool {
	q := "UPDATE " + w.cfg.OccTable + " SET holder = ?, fence = ? WHERE name = ? AND holder = ''"
	res := w.db.WithContext(ctx).Exec(q+" AND fence < ?", holder, fence, name, fence)
	if res.Error != nil {
		w.box.harnessErr("occupy", res.Error)
		return false
	}
	if res.RowsAffected == 1 {
		return true
	}
	var cur occRow
	if err := w.db.WithContext(ctx).Table(w.cfg.OccTable).Where("name = ?", name).Take(&cur).Error; err != nil {
		w.box.harnessErr("occupy read", err)
		return false
	}
	if cur.Holder != "" {
		w.box.violation(true, fmt.Sprintf("OVERLAP on %s: %s got fence %d while %q (fence %d) held it", name, holder, fence, cur.Holder, cur.Fence))
		return false
	}
	w.box.violation(false, fmt.Sprintf("FENCE on %s: %s got fence %d after a hold with fence %d", name, holder, fence, cur.Fence))
	// Still occupy the free row, so overlaps stay detectable.
	res = w.db.WithContext(ctx).Exec(q, holder, fence, name)
	if res.Error != nil {
		w.box.harnessErr("occupy", res.Error)
		return false
	}
	if res.RowsAffected != 1 {
		w.box.violation(true, fmt.Sprintf("OVERLAP on %s: %s found it taken", name, holder))
		return false
	}
	return true
}

func (w *tortureWorker) vacate(ctx context.Context, name, holder string) {
	res := w.db.WithContext(ctx).Exec("UPDATE "+w.cfg.OccTable+" SET holder = '' WHERE name = ? AND holder = ?", name, holder)
	if res.Error != nil {
		w.box.harnessErr("vacate", res.Error)
		return
	}
	if res.RowsAffected != 1 {
		w.box.violation(true, fmt.Sprintf("OVERLAP on %s: %s found its occupancy taken when leaving", name, holder))
	}
}

// auditReport is what the checker proves from the audit table.
type auditReport struct {
	Holds          int
	Overlaps       int
	FenceBackwards int
	Lost           int
	Examples       []string
}

// checkAudit reads every hold and checks that, per name, holds sorted by
// start do not overlap and their fences strictly grow.
func checkAudit(db *gorm.DB, audit string) (auditReport, error) {
	var rows []auditRow
	if err := db.Table(audit).Find(&rows).Error; err != nil {
		return auditReport{}, fmt.Errorf("read %s: %w", audit, err)
	}
	return checkHolds(rows), nil
}

func checkHolds(rows []auditRow) auditReport {
	rep := auditReport{Holds: len(rows)}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Name != rows[j].Name {
			return rows[i].Name < rows[j].Name
		}
		return rows[i].StartNs < rows[j].StartNs
	})
	note := func(format string, args ...any) {
		if len(rep.Examples) < 20 {
			rep.Examples = append(rep.Examples, fmt.Sprintf(format, args...))
		}
	}
	var last auditRow // the hold of this name that ends last so far
	for i, r := range rows {
		if r.Lost {
			rep.Lost++
		}
		if i == 0 || rows[i-1].Name != r.Name {
			last = r
			continue
		}
		p := rows[i-1]
		if r.StartNs < last.EndNs {
			rep.Overlaps++
			note("overlap on %q: %s fence %d [%d,%d] and %s fence %d [%d,%d]",
				r.Name, last.Holder, last.Fence, last.StartNs, last.EndNs, r.Holder, r.Fence, r.StartNs, r.EndNs)
		}
		if r.EndNs > last.EndNs {
			last = r
		}
		if r.Fence <= p.Fence {
			rep.FenceBackwards++
			note("fence on %q went from %d (%s) to %d (%s)", r.Name, p.Fence, p.Holder, r.Fence, r.Holder)
		}
	}
	return rep
}
