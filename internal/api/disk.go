package api

import "syscall"

// DefaultDiskReserve is the free space below which the hub is not ready
// (docs/api.md §13): room for a checkpoint of a grown WAL (64 MiB), the
// rotated logs (50 MiB) and a backup's temporary files.
const DefaultDiskReserve = 256 << 20

// diskFree reports the space an unprivileged writer still has on the data
// directory's filesystem; ok is false when it cannot be measured.
func diskFree(dir string) (free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks == 0 {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

// diskOK reports whether the data directory keeps at least reserve bytes
// free; an unmeasurable filesystem counts as short of space.
func diskOK(dir string, reserve int64) bool {
	if dir == "" {
		return true
	}
	free, ok := diskFree(dir)
	return ok && free >= uint64(max(reserve, 0))
}
