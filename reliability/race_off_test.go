//go:build !race

package reliability

// raceSlack is added to the election torture's takeover limits under the
// race detector only.
const raceSlack = 0
