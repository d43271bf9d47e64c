package main

import (
	"context"
	"fmt"
	"time"
)

// lockerOpts are the settings lockers take beyond their database.
type lockerOpts struct {
	DjangoPoll time.Duration
	RedisAddr  string
	Conns      int
}

// buildLocker builds the locker called label on t. create makes its table
// (lockmgr: AutoMigrate); worker processes pass false.
func buildLocker(ctx context.Context, t *target, label string, o lockerOpts, create bool) (locker, error) {
	switch label {
	case lkLockmgr, lkNotify:
		l, err := newLockmgrLocker(ctx, t, t.tables.Lockmgr, create, label == lkNotify)
		if err != nil {
			return nil, err
		}
		return l, nil
	case lkFloor:
		l, err := newFloorLocker(ctx, t, t.tables.Floor, create)
		if err != nil {
			return nil, err
		}
		return l, nil
	case lkNative:
		l, err := newNativeLocker(t)
		if err != nil {
			return nil, err
		}
		return l, nil
	case lkDjango:
		l, err := newDjangoLocker(ctx, t, t.tables.Django, o.DjangoPoll, create)
		if err != nil {
			return nil, err
		}
		return l, nil
	case lkRedis:
		l, err := newRedisLocker(ctx, o.RedisAddr, t.salt, max(o.Conns, 2))
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("unknown locker %q", label)
}
