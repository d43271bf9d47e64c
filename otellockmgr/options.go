package otellockmgr

import (
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gormlock/lockmgr"
)

// Opt configures Option.
type Opt func(*config)

type config struct {
	tp    trace.TracerProvider
	mp    metric.MeterProvider
	hooks lockmgr.Hooks
}

// WithTracerProvider makes the spans come from tp's tracer. The default is
// the global provider (otel.GetTracerProvider) as it is when Option is
// called.
func WithTracerProvider(tp trace.TracerProvider) Opt {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider makes the metrics come from mp's meter. The default is
// the global provider (otel.GetMeterProvider) as it is when Option is
// called.
func WithMeterProvider(mp metric.MeterProvider) Opt {
	return func(c *config) { c.mp = mp }
}

// WithHooks adds hooks of your own, called after the telemetry's, since
// lockmgr.WithHooks and Option would replace each other's.
func WithHooks(h lockmgr.Hooks) Opt {
	return func(c *config) { c.hooks = h }
}
