package api

import "syscall"

// diskOK reports whether the data directory's filesystem is below 95 % used.
func diskOK(dir string) bool {
	if dir == "" {
		return true
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks == 0 {
		return false
	}
	used := 1 - float64(st.Bavail)/float64(st.Blocks)
	return used < 0.95
}
