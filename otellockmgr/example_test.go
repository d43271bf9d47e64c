package otellockmgr_test

import (
	"context"
	"fmt"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/otellockmgr"
)

// ExampleOption: the spans of a lock taken while serving a request are the
// request span's children.
func ExampleOption() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	dir, _ := os.MkdirTemp("", "example")
	defer func() { _ = os.RemoveAll(dir) }()
	db, _ := gorm.Open(sqlite.Open("file:"+dir+"/app.db?_busy_timeout=10000&_journal_mode=WAL"),
		&gorm.Config{Logger: logger.Discard})
	if sqlDB, err := db.DB(); err == nil {
		defer func() { _ = sqlDB.Close() }()
	}
	m, err := lockmgr.New(db, otellockmgr.Option(otellockmgr.WithTracerProvider(tp)))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	ctx, request := tp.Tracer("app").Start(context.Background(), "GET /report")
	err = m.Do(ctx, "nightly-report", func(ctx context.Context, s *lockmgr.Scope) error {
		return nil // the report
	})
	request.End()
	fmt.Println(err)

	names := map[string]string{}
	for _, s := range spans.GetSpans() {
		names[s.SpanContext.SpanID().String()] = s.Name
	}
	for _, s := range spans.GetSpans() {
		if parent, ok := names[s.Parent.SpanID().String()]; ok {
			fmt.Printf("%s, in %s\n", s.Name, parent)
		} else {
			fmt.Println(s.Name)
		}
	}
	// Output:
	// <nil>
	// acquire lockmgr_lock, in GET /report
	// release lockmgr_lock, in GET /report
	// GET /report
}
