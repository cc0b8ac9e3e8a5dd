package iam

import "strings"

// EditDistance is the Levenshtein distance between a and b (in bytes): how
// near a mistyped member, role or command is to a real one.
func EditDistance(a, b string) int {
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

// closest returns the candidate nearest to s (ignoring case) when it is
// within max edits, else "".
func closest(s string, max int, candidates ...string) string {
	best, out := max+1, ""
	for _, c := range candidates {
		if d := EditDistance(strings.ToLower(s), strings.ToLower(c)); d < best {
			best, out = d, c
		}
	}
	return out
}
