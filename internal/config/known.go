package config

// Known reports whether name is one of Variables.
func Known(name string) bool {
	_, ok := defaults[name]
	return ok
}

// Closest returns the variable whose name is nearest to name by edit
// distance (OPENAI_BASEURL → OPENAI_BASE_URL, MAX_RETRY → MAX_RETRIES), for
// a "did you mean" next to an unknown variable.
func Closest(name string) string {
	best, bestD := "", -1
	for _, v := range Variables {
		if d := editDistance(name, v.Name); bestD < 0 || d < bestD {
			best, bestD = v.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (variable names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
