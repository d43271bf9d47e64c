package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gormlock/lockmgr"
)

// replicaConfig is what one failover worker process is told.
type replicaConfig struct {
	Target   childTarget
	Round    string // names are the round's own
	Proc     int
	Shared   int           // contended names s-0 … s-(Shared-1)
	Expiry   time.Duration // of a contended name's acquisition
	Duration time.Duration
}

// replicaAck is one acknowledged acquisition, printed by a worker as a JSON
// line the moment GetLock returns; the parent stamps Recv when it reads it.
type replicaAck struct {
	Name    string    `json:"n"`
	Fence   int64     `json:"f"`
	Created int64     `json:"c"` // the database's clock, unix microseconds
	Until   int64     `json:"u"`
	Recv    time.Time `json:"-"`
}

// runReplicaChild takes, for Duration, a name of its own that it never
// releases ("u-ROUND-PROC-I", which must survive the failover) and then a
// contended one with a short expiry, printing every acquisition it is
// told of. Errors (the primary's death, ErrLocked) are simply retried.
func runReplicaChild(raw string) int {
	var cfg replicaConfig
	m, _, code := openChild(raw, &cfg, &cfg.Target)
	if code != 0 {
		return code
	}
	enc := json.NewEncoder(os.Stdout)
	deadline := time.Now().Add(cfg.Duration)
	for i := 0; time.Now().Before(deadline); i++ {
		replicaTake(m, enc, fmt.Sprintf("u-%s-%d-%d", cfg.Round, cfg.Proc, i), 10*time.Minute)
		replicaTake(m, enc, fmt.Sprintf("s-%s-%d", cfg.Round, i%cfg.Shared), cfg.Expiry)
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// replicaTake tries name once and prints the acquisition when it succeeds.
func replicaTake(m *lockmgr.Manager, enc *json.Encoder, name string, expiry time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := m.GetLock(ctx, name, lockmgr.Expires(expiry))
	if err != nil || l.LockedUntil == nil {
		if err != nil && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // the primary is gone: do not spin
		}
		return
	}
	_ = enc.Encode(replicaAck{Name: name, Fence: l.Fence, Created: l.CreatedAt.UnixMicro(), Until: l.LockedUntil.UnixMicro()})
}
