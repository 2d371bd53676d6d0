package sqlite

import (
	"context"
	"time"
)

// Checkpoints move committed pages from the WAL into the database file.
// SQLite runs them, by default, inside the commit that takes the WAL past
// 1000 pages: that commit then writes and fsyncs hundreds of pages to the
// database file while every append queued behind it waits, which is most
// of the tail of ack latency under load. The store instead checkpoints
// from a connection of its own, in the background, while the committer
// goes on appending to the WAL (a PASSIVE checkpoint takes no lock a
// writer needs). The writer keeps an automatic checkpoint as a backstop at
// walBackstopPages, in case the background one cannot keep up.
const (
	checkpointEvery  = 100 * time.Millisecond
	walBackstopPages = 20000 // ~80 MiB of WAL with 4 KiB pages
	checkpointLimit  = 10 * time.Second
)

// checkpointLoop checkpoints on s.ckpt after commits, at most every
// checkpointEvery, until Close closes s.ckptStop. (Closing the last
// connection checkpoints what is left.)
func (s *Store) checkpointLoop() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-s.ckptStop:
			return
		case <-t.C:
		}
		n := s.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		ctx, cancel := context.WithTimeout(context.Background(), checkpointLimit)
		_, err := s.ckpt.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		cancel()
		if err != nil && !s.closed.Load() {
			s.log.Warn("sqlite: background checkpoint", "err", err)
		}
	}
}
