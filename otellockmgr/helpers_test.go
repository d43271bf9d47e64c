package otellockmgr_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
	"github.com/gormlock/lockmgr/otellockmgr"
)

// TestMain fails the run if a test leaves a goroutine behind (a scope's
// keep-alive, a pool's connection opener, an SDK's batcher).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newManager makes a Manager with opts on the database of the subtest.
type newManager func(opts ...lockmgr.Option) *lockmgr.Manager

// eachDB runs fn on SQLite, and on PostgreSQL and MariaDB/MySQL when
// LOCKMGR_TEST_POSTGRES_DSN and LOCKMGR_TEST_MYSQL_DSN are set, each
// Manager on a table of its own dropped at cleanup; system is the
// db.system.name values expected.
func eachDB(t *testing.T, fn func(t *testing.T, nm newManager, systems []string)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(opts ...lockmgr.Option) *lockmgr.Manager { return lockmgrtest.New(t, opts...) }, []string{"sqlite"})
	})
	for _, s := range []struct {
		env, name string
		open      func(string) gorm.Dialector
		systems   []string
	}{
		{"LOCKMGR_TEST_POSTGRES_DSN", "postgres", postgres.Open, []string{"postgresql"}},
		{"LOCKMGR_TEST_MYSQL_DSN", "mysql", mysql.Open, []string{"mysql", "mariadb"}},
	} {
		if dsn := os.Getenv(s.env); dsn != "" {
			t.Run(s.name, func(t *testing.T) { fn(t, serverManagers(t, s.open(dsn)), s.systems) })
		}
	}
}

func serverManagers(t *testing.T, d gorm.Dialector) newManager {
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	return func(opts ...lockmgr.Option) *lockmgr.Manager {
		var b [5]byte
		_, _ = rand.Read(b[:])
		table := "otellockmgr_" + hex.EncodeToString(b[:])
		t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
		// Migrated by a Manager of its own: on MariaDB the migration takes a
		// lock of the table (fence_mysql.go), which the telemetry would show.
		mig, err := lockmgr.New(db, lockmgr.WithTable(table))
		require.NoError(t, err)
		require.NoError(t, mig.AutoMigrate(context.Background()))
		m, err := lockmgr.New(db, append([]lockmgr.Option{lockmgr.WithTable(table)}, opts...)...)
		require.NoError(t, err)
		return m
	}
}

// telemetry is an SDK tracer provider recording into spans, and a meter
// provider read by reader.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(context.Background())
		_ = tel.mp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) option() lockmgr.Option {
	return otellockmgr.Option(otellockmgr.WithTracerProvider(tel.tp), otellockmgr.WithMeterProvider(tel.mp))
}

// metrics reads the metrics: counters' and up-down counters' sums, and
// histograms' counts, by metric name, over all attribute sets.
func (tel *telemetry) metrics(t *testing.T) map[string]int64 {
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += int64(p.Count)
					if v, ok := p.Attributes.Value(otellockmgr.AttrOutcome); ok {
						out[m.Name+"/"+v.AsString()] += int64(p.Count)
					}
				}
			}
		}
	}
	return out
}

// attrs is a span's attributes by key.
func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		out[kv.Key] = kv.Value
	}
	return out
}
