package lockmgr

// CachedHandles is how many database handles this process keeps state for
// (prepared statements, notice marks: dbhandle.go).
func CachedHandles() int {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	return len(handles.m)
}
