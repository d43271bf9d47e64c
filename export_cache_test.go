package lockmgr

// CachedHandles is how many database handles this process keeps state for
// (prepared statements, notice marks: dbhandle.go).
func CachedHandles() int {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	return len(handles.m)
}

// SetListPage sets how many rows each of List's statements reads and
// returns a function that restores it.
func SetListPage(n int) (restore func()) {
	old := listPage
	listPage = n
	return func() { listPage = old }
}

// SetCleanBatch sets how many rows each of CleanLocks' statements deletes
// and returns a function that restores it.
func SetCleanBatch(n int) (restore func()) {
	old := cleanBatch
	cleanBatch = n
	return func() { cleanBatch = old }
}
