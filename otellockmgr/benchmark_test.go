package otellockmgr_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
	"github.com/gormlock/lockmgr/otellockmgr"
)

// BenchmarkAcquireRelease is one GetLock and Release on SQLite: without
// the option, with it on OpenTelemetry's no-op providers (the globals when
// nothing is set), and with it on the SDK (every span sampled and batched
// to an exporter that drops it, metrics aggregated for a reader).
func BenchmarkAcquireRelease(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchCycle(b, lockmgrtest.New(b)) })
	b.Run("otel-noop", func(b *testing.B) { benchCycle(b, lockmgrtest.New(b, otellockmgr.Option())) })
	b.Run("otel-sdk", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		benchCycle(b, lockmgrtest.New(b, otellockmgr.Option(
			otellockmgr.WithTracerProvider(tp), otellockmgr.WithMeterProvider(mp))))
	})
}

func benchCycle(b *testing.B, m *lockmgr.Manager) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := m.GetLock(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Release(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
}
