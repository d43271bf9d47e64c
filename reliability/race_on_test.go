//go:build race

package reliability

import "time"

// raceSlack is added to the election torture's takeover limits: the race
// detector slows every process several times over.
const raceSlack = time.Second
