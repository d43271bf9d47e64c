package otellockmgr

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Metric names.
const (
	// MetricAcquireDuration is a histogram of how long acquisitions took,
	// waiting included, in seconds, by outcome (AttrOutcome).
	MetricAcquireDuration = "lockmgr.acquire.duration"
	// MetricContentions counts the attempts that found the name held
	// (several per acquisition that waits).
	MetricContentions = "lockmgr.contentions"
	// MetricHoldDuration is a histogram of how long released locks were
	// held, in seconds: from the acquisition time the database recorded
	// (Lock.CreatedAt) to the release, by this process's clock.
	MetricHoldDuration = "lockmgr.hold.duration"
	// MetricHeld is how many locks this process holds as far as it knows:
	// up at each acquisition, down at each release and each lost lock a
	// scope discovers (a lock left to expire, or unlocked by name, stays
	// counted).
	MetricHeld = "lockmgr.held"
	// MetricLost counts the locks scopes found lost.
	MetricLost = "lockmgr.lost"
)

type instruments struct {
	acquire   metric.Float64Histogram
	hold      metric.Float64Histogram
	contended metric.Int64Counter
	held      metric.Int64UpDownCounter
	lost      metric.Int64Counter
}

// newInstruments creates the instruments; the API gives a working no-op
// instrument beside an error, which goes to otel.Handle.
func newInstruments(m metric.Meter) instruments {
	var in instruments
	var err error
	report := func() {
		if err != nil {
			otel.Handle(err)
		}
	}
	in.acquire, err = m.Float64Histogram(MetricAcquireDuration, metric.WithUnit("s"),
		metric.WithDescription("How long lock acquisitions took, waiting included."))
	report()
	in.hold, err = m.Float64Histogram(MetricHoldDuration, metric.WithUnit("s"),
		metric.WithDescription("How long released locks were held."))
	report()
	in.contended, err = m.Int64Counter(MetricContentions, metric.WithUnit("{attempt}"),
		metric.WithDescription("Acquisition attempts that found the name held."))
	report()
	in.held, err = m.Int64UpDownCounter(MetricHeld, metric.WithUnit("{lock}"),
		metric.WithDescription("Locks this process holds."))
	report()
	in.lost, err = m.Int64Counter(MetricLost, metric.WithUnit("{lock}"),
		metric.WithDescription("Locks a scope found lost."))
	report()
	return in
}
