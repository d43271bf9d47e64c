package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/spf13/cobra"
)

// clearLong is clear's help.
const clearLong = `clear removes each NAME's lock, whoever holds it and whether or not it has
expired, as django-lockmgr's clear_lock does. A NAME that is not locked is
fine. A program still running under a cleared lock is not told; one that
uses a lockmgr scope (or 'lockmgr run') notices at its next renewal.

A semaphore's slot is a lock of its own: 'lockmgr clear NAME#2' frees slot
2 of semaphore NAME. With --semaphore, each NAME is a semaphore: every
live slot and its size marker are removed, after which the next
acquisition sets its size again (docs/semaphores.md).

OUTPUT
  Per NAME:
    Releasing lock NAME...
    Lock NAME has been removed (if it exists).
  With --semaphore, per NAME:
    Clearing semaphore NAME...
    Semaphore NAME: 3 locks removed.`

// clearCommand builds "lockmgr clear".
func (a *app) clearCommand() *cobra.Command {
	var semaphore bool
	cmd := &cobra.Command{
		Use:   "clear [--semaphore] NAME...",
		Short: "Remove locks by name, whoever holds them",
		Long:  clearLong,
		Example: `  lockmgr clear deploy
  lockmgr clear invoice:41 invoice:42 invoice:43
  lockmgr clear 'exports#2'
  lockmgr clear --semaphore exports`,
		Args: a.minArgs(1, "at least one lock NAME"),
		RunE: func(cmd *cobra.Command, names []string) error {
			if err := validateNames(names); err != nil {
				return err
			}
			m, _, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			for _, name := range names {
				if semaphore {
					err = a.clearSemaphore(cmd.Context(), m, name)
				} else {
					err = a.clearLock(cmd.Context(), m, name)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&semaphore, "semaphore", false, "each NAME is a semaphore: remove all its slots and its size marker")
	return cmd
}

func (a *app) clearLock(ctx context.Context, m *lockmgr.Manager, name string) error {
	fmt.Fprintf(a.stdout, "Releasing lock %s...\n", name)
	if err := m.Unlock(ctx, name); err != nil {
		return fmt.Errorf("clearing lock %q: %w", name, err)
	}
	fmt.Fprintf(a.stdout, "Lock %s has been removed (if it exists).\n", name)
	return nil
}

func (a *app) clearSemaphore(ctx context.Context, m *lockmgr.Manager, name string) error {
	fmt.Fprintf(a.stdout, "Clearing semaphore %s...\n", name)
	n, err := m.ClearSemaphore(ctx, name)
	if err != nil {
		return fmt.Errorf("clearing semaphore %q: %w", name, err)
	}
	fmt.Fprintf(a.stdout, "Semaphore %s: %s removed.\n", name, plural(int64(n), "lock"))
	return nil
}

// resetPrompt is django-lockmgr's reset_locks question.
const resetPrompt = "Type YES in all capitals if you are sure > "

// resetCommand builds "lockmgr reset".
func (a *app) resetCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "reset [-f]",
		Short: "Delete every lock in the table, after asking",
		Long: `reset deletes every row of the lock table: live locks, whoever holds them,
and expired rows. Stop the programs that use the locks first, or two of them
may run what only one should.

It first lists the live locks that would go. Then, without -f, it asks on
stderr

  Type YES in all capitals if you are sure > 

and reads one line from stdin. Only the answer YES deletes anything; any
other answer, or end of input, deletes nothing and exits with status 1.

OUTPUT
  The list (as 'lockmgr list' prints it), then, once deleted:
    A total of N lock rows were deleted.`,
		Example: `  lockmgr reset
  lockmgr reset --force          # no question: for scripts
  echo YES | lockmgr reset       # the same, answering through stdin`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, t, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			locks, err := m.List(cmd.Context())
			if err != nil {
				return fmt.Errorf("listing locks: %w", err)
			}
			fmt.Fprintf(a.stdout, "WARNING: you are about to delete ALL locks in table %q of %s.\n\n", t.Table, t.DB)
			writeLockList(a.stdout, fmt.Sprintf("The following %d active locks would be removed (expired rows go too):", len(locks)), locks, time.Now())
			if !force {
				if err := a.confirm(); err != nil {
					return err
				}
			}
			n, err := m.Reset(cmd.Context())
			if err != nil {
				return fmt.Errorf("deleting locks: %w", err)
			}
			fmt.Fprintf(a.stdout, "A total of %d lock rows were deleted.\n", n)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask; delete at once")
	return cmd
}

// confirm asks resetPrompt and returns nil only when the answer is YES.
func (a *app) confirm() error {
	fmt.Fprintf(a.stderr, "Are you SURE you want to clear all locks?\n%s", resetPrompt)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if !isTerminal(a.stdin) {
		fmt.Fprintln(a.stderr) // a terminal ended the prompt's line with the echoed answer
	}
	answer := strings.TrimSpace(line)
	if errors.Is(err, io.EOF) && answer == "" {
		return &exitError{code: exitFailure, err: errors.New("reset: no answer (end of input); nothing was deleted")}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reset: reading the answer: %w", err)
	}
	if answer != "YES" {
		return &exitError{code: exitFailure, err: errors.New("reset: you did not type YES; nothing was deleted")}
	}
	return nil
}

// cleanCommand builds "lockmgr clean".
func (a *app) cleanCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Delete expired lock rows",
		Long: `clean deletes the rows of locks that have expired and prints how many. An
expired lock already counts as free, so this only tidies the table; live
locks and locks that never expire are kept.

OUTPUT
  Removed N expired locks.`,
		Example: `  lockmgr clean
  0 * * * * lockmgr clean >/dev/null     # hourly, from cron`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, _, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			n, err := m.CleanLocks(cmd.Context())
			if err != nil {
				return fmt.Errorf("cleaning locks: %w", err)
			}
			fmt.Fprintf(a.stdout, "Removed %s.\n", plural(n, "expired lock"))
			return nil
		},
	}
}

// migrateCommand builds "lockmgr migrate".
func (a *app) migrateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or update the lock table",
		Long: `migrate creates the lock table, or brings an existing one up to date: a
table made by an older lockmgr, by GORM's AutoMigrate or by django-lockmgr
gets the columns lockmgr adds (token, fence), a 255-byte name (byte-exact on
MySQL/MariaDB) and the side table and triggers fences use, and
django-lockmgr keeps working on it. Running it again changes nothing; any
number of processes may run it at once (it is serialized in the database).
See docs/setup.md.

OUTPUT
  Table "lockmgr_lock" is ready in sqlite://lockmgr.db.`,
		Example: `  lockmgr migrate
  lockmgr --dsn 'postgres://app@db/app' --table locks migrate`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, t, err := a.manager(cmd.Context(), true)
			if err != nil {
				return err
			}
			if err := m.AutoMigrate(cmd.Context()); err != nil {
				return fmt.Errorf("migrating table %q: %w", t.Table, err)
			}
			fmt.Fprintf(a.stdout, "Table %q is ready in %s.\n", t.Table, t.DB)
			return nil
		},
	}
}
