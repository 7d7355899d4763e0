package redis

// LocalBuckets is the number of buckets of the fallback limiter.
func (s *Store) LocalBuckets() int {
	s.local.mu.Lock()
	defer s.local.mu.Unlock()
	return len(s.local.buckets)
}
