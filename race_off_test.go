//go:build !race

package lockmgr_test

const raceEnabled = false
