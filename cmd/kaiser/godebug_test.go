package main

import (
	"slices"
	"testing"
)

func TestWithKeptStacks(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want []string // nil: no restart
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=gcshrinkstackoff=1"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=gcshrinkstackoff=1"}},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1", "B=2"}, []string{"GODEBUG=madvdontneed=1,gcshrinkstackoff=1", "B=2"}},
		{"already set: no restart loop", []string{"GODEBUG=gcshrinkstackoff=1"}, nil},
		{"operator turned it off", []string{"GODEBUG=x=1,gcshrinkstackoff=0"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, restart := withKeptStacks(c.env)
			if restart != (c.want != nil) || !slices.Equal(got, c.want) {
				t.Fatalf("got %q, restart %v; want %q", got, restart, c.want)
			}
		})
	}
}
