package otellockmgr

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tnoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gormlock/lockmgr/lockmgrtest"
)

// BenchmarkHooks is the telemetry of one acquire and one release alone,
// without the database: what BenchmarkAcquireRelease's otel variants add.
func BenchmarkHooks(b *testing.B) {
	m := lockmgrtest.New(b)
	l, err := m.GetLock(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	for _, c := range []struct {
		name string
		c    config
	}{{"noop", config{tp: tnoop.NewTracerProvider(), mp: noop.NewMeterProvider()}}, {"sdk", config{tp: tp, mp: mp}}} {
		h := newTelemetry(c.c).hooks(config{}.hooks)
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, end := h.OnStart(ctx, m, "acquire", "bench")
				end(l, nil)
				_, end = h.OnStart(ctx, m, "release", "bench")
				end(l, nil)
			}
		})
	}
}
