package analytics

// SetGroupsPerChunk lets tests split the agent scope into many parts.
func SetGroupsPerChunk(n uint64) (restore func()) {
	old := groupsPerChunk
	groupsPerChunk = n
	return func() { groupsPerChunk = old }
}
