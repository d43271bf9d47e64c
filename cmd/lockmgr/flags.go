package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// durationFlag is a pflag.Value for durations written either as Go
// durations ("90s", "1m30s", "2h") or as a bare number of seconds ("600",
// "1.5"), as django-lockmgr's --timeout took them. Negative values are
// rejected.
type durationFlag time.Duration

// String shows the duration as Go prints it; it is what --help shows as
// the default. Zero is "0", which --help leaves out.
func (d *durationFlag) String() string {
	if *d == 0 {
		return "0"
	}
	return time.Duration(*d).String()
}

// Set parses s; see durationFlag.
func (d *durationFlag) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationFlag(v)
	return nil
}

// Type names the value in --help.
func (d *durationFlag) Type() string { return "DURATION" }

// parseDuration implements durationFlag's syntax.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		switch {
		case secs < 0:
			return 0, fmt.Errorf("duration %q is negative", s)
		case math.IsNaN(secs) || secs > float64(math.MaxInt64)/float64(time.Second):
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want seconds such as 600, or 90s, 10m, 1h30m)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}
