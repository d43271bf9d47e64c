package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0..100) of sorted, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// median of float64s; NaN for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianDur is median for durations.
func medianDur(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	m := median(f)
	if math.IsNaN(m) {
		return 0
	}
	return time.Duration(m)
}

// jain is Jain's fairness index of per-worker shares: 1 when all are equal,
// 1/n when one worker gets everything.
func jain(counts []int) float64 {
	var sum, sq float64
	for _, c := range counts {
		sum += float64(c)
		sq += float64(c) * float64(c)
	}
	if sq == 0 {
		return 0
	}
	return sum * sum / (float64(len(counts)) * sq)
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
