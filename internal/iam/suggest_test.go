package iam

import (
	"strings"
	"testing"
)

func TestParseMemberSuggests(t *testing.T) {
	tests := []struct{ member, want string }{
		{"alluser", `did you mean "allUsers"`},
		{"allUser", `did you mean "allUsers"`},
		{"allauthenticatedusers", `did you mean "allAuthenticatedUsers"`},
		{"allAuthenticatedUser", `did you mean "allAuthenticatedUsers"`},
		{"usr:a@example.com", `did you mean "user:a@example.com"`},
		{"serviceaccount:a@example.com", `did you mean "serviceAccount:a@example.com"`},
		{"grp:a@example.com", `did you mean "group:a@example.com"`},
		{"nobody", `members must be`},
	}
	for _, tt := range tests {
		_, err := ParseMember(tt.member)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseMember(%q) = %v, want an error with %q", tt.member, err, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"deplyo", "deploy", 2}, {"kitten", "sitting", 3}, {"run", "run", 0},
	}
	for _, tt := range tests {
		if got := EditDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
