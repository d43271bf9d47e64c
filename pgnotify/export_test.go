package pgnotify

// SyncBuffer is a bytes.Buffer safe for concurrent writes, for log output.
type SyncBuffer = syncBuffer
