package lockmgr

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

const pluginName = "lockmgr"

// Plugin is a gorm.Plugin: db.Use(lockmgr.NewPlugin()) migrates the lock
// table and builds a Manager, which FromDB(db) returns later.
type Plugin struct {
	opts []Option
	m    *Manager
}

// NewPlugin returns a Plugin that builds its Manager with opts.
func NewPlugin(opts ...Option) *Plugin {
	return &Plugin{opts: opts}
}

// Name is the plugin's name in gorm.Config.Plugins.
func (p *Plugin) Name() string { return pluginName }

// Initialize is called by db.Use: it builds the Manager and migrates the
// table, returning the first error.
func (p *Plugin) Initialize(db *gorm.DB) error {
	m, err := New(db, p.opts...)
	if err != nil {
		return err
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		return err
	}
	p.m = m
	return nil
}

// Manager returns the plugin's Manager, nil before db.Use ran.
func (p *Plugin) Manager() *Manager { return p.m }

// FromDB returns the Manager of the Plugin registered on db with db.Use.
// Given the tx of a transaction (db.Transaction's callback, db.Begin()),
// it returns that Manager's WithTx(tx), as New(tx) would be: its locks
// commit or roll back with tx. It returns ErrInvalidOption when there is
// no plugin.
func FromDB(db *gorm.DB) (*Manager, error) {
	if err := checkDB(db); err != nil {
		return nil, err
	}
	p, ok := db.Config.Plugins[pluginName].(*Plugin)
	if !ok || p.m == nil {
		return nil, fmt.Errorf("%w: no lockmgr plugin on this *gorm.DB; register one with db.Use(lockmgr.NewPlugin())", ErrInvalidOption)
	}
	if pool, _ := unprepared(db.Statement.ConnPool); inTransaction(pool) || inTransaction(db.Statement.ConnPool) {
		return p.m.WithTx(db), nil // inside db.Transaction: as New(tx) is, transactional
	}
	return p.m, nil
}
