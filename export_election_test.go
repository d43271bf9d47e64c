package lockmgr

// StallKeepAlive stops s's keep-alive goroutine, as a process paused
// (SIGSTOP, a GC stall) past its lock's safe deadline would find it on
// resuming: nothing has run since. Close still releases.
func StallKeepAlive(s *Scope) {
	s.stopTend()
	<-s.tendDone
}
