package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"600": 600 * time.Second, "1.5": 1500 * time.Millisecond, "0": 0, "90s": 90 * time.Second, "1h30m": 90 * time.Minute,
	} {
		got, err := parseDuration(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "-1", "-1s", "soon", "NaN", "1e300"} {
		_, err := parseDuration(in)
		assert.Error(t, err, in)
	}
}
