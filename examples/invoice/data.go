package main

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// reset creates the example's tables and puts invoice 42 back to open,
// removing the locks an earlier run left.
func (s *shop) reset(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	for table, model := range map[string]any{s.invoices: &Invoice{}, s.lines: &Line{}, s.charges: &Charge{}} {
		if err := db.Table(table).AutoMigrate(model); err != nil {
			return err
		}
	}
	lines := []Line{
		{OrderID: orderID, SKU: "desk", Qty: 1, Cents: 45000},
		{OrderID: orderID, SKU: "chair", Qty: 4, Cents: 15000},
		{OrderID: orderID, SKU: "lamp", Qty: 2, Cents: 12000},
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		for _, del := range []struct{ table, where string }{
			{s.charges, "invoice_id = ?"}, {s.invoices, "id = ?"}, {s.lines, "order_id = ?"},
		} {
			id := invoiceID
			if del.table == s.lines {
				id = orderID
			}
			if err := tx.Table(del.table).Where(del.where, id).Delete(nil).Error; err != nil {
				return err
			}
		}
		if err := tx.Table(s.lines).Create(&lines).Error; err != nil {
			return err
		}
		return tx.Table(s.invoices).Create(&Invoice{ID: invoiceID, OrderID: orderID, Cents: total(lines), Status: "open"}).Error
	})
	if err != nil {
		return err
	}
	for _, name := range append(stockLocks(lines), fmt.Sprintf("invoice:%d", invoiceID)) {
		if err := s.m.Unlock(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// orderLines reads the order's lines.
func (s *shop) orderLines(ctx context.Context) ([]Line, error) {
	var lines []Line
	err := s.db.WithContext(ctx).Table(s.lines).Where("order_id = ?", orderID).Order("id").Find(&lines).Error
	return lines, err
}

// stockLocks names the lock of each line's stock.
func stockLocks(lines []Line) []string {
	names := make([]string, len(lines))
	for i, l := range lines {
		names[i] = "stock:" + l.SKU
	}
	return names
}

func total(lines []Line) int64 {
	var t int64
	for _, l := range lines {
		t += int64(l.Qty) * l.Cents
	}
	return t
}

func describe(lines []Line) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = fmt.Sprintf("%s ×%d", l.SKU, l.Qty)
	}
	return strings.Join(parts, ", ") + " = " + money(total(lines))
}

func money(cents int64) string {
	return fmt.Sprintf("%d.%02d EUR", cents/100, cents%100)
}
