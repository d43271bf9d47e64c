package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// redisLocker is github.com/bsm/redislock, used as its README shows, on the
// local Redis. Waiting uses its exponential backoff between 1 ms and 64 ms.
type redisLocker struct {
	client *redis.Client
	rl     *redislock.Client
	prefix string
}

// redisBackoff bounds redislock's retry interval while waiting.
var redisBackoff = [2]time.Duration{time.Millisecond, 64 * time.Millisecond}

func newRedisLocker(ctx context.Context, addr, salt string, conns int) (*redisLocker, error) {
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: conns, MinIdleConns: 1})
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	return &redisLocker{client: client, rl: redislock.New(client), prefix: "bench:" + salt + ":"}, nil
}

// redisVersion reports the server's version, for the results.
func (r *redisLocker) version(ctx context.Context) string {
	info, err := r.client.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return "Redis " + v
		}
	}
	return "unknown"
}

func (r *redisLocker) label() string { return lkRedis }

func (r *redisLocker) session(context.Context) (session, error) { return sharedSession{r}, nil }

func (r *redisLocker) lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error) {
	var opt *redislock.Options
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
		opt = &redislock.Options{RetryStrategy: redislock.ExponentialBackoff(redisBackoff[0], redisBackoff[1])}
	}
	l, err := r.rl.Obtain(ctx, r.prefix+name, ttl, opt)
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, redislock.ErrNotObtained), wait > 0 && errors.Is(err, context.DeadlineExceeded):
		return nil, errHeld
	default:
		return nil, describe(lkRedis, err)
	}
}

func (r *redisLocker) unlock(ctx context.Context, held any) error {
	return describe(lkRedis, held.(*redislock.Lock).Release(ctx))
}

func (r *redisLocker) close() error { return r.client.Close() }
