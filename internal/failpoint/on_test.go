//go:build failpoints

package failpoint

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	got := parse(" " + AckBeforeCommit + ",," + LockGrantedTwice + " ")
	if !got[AckBeforeCommit] || !got[LockGrantedTwice] || len(got) != 2 {
		t.Fatalf("parse = %v", got)
	}
	if len(parse("")) != 0 {
		t.Fatal("empty env enables something")
	}
}

func TestEnabledFollowsActive(t *testing.T) {
	defer func(old map[string]bool) { active = old }(active)
	active = parse(StaleLinearizableRead)
	if !Enabled(StaleLinearizableRead) || Enabled(AckBeforeCommit) {
		t.Fatal("Enabled does not follow the parsed set")
	}
	if a := Active(); !slices.Equal(a, []string{StaleLinearizableRead}) {
		t.Fatalf("Active() = %v", a)
	}
	if !Built {
		t.Fatal("Built is false with the failpoints tag")
	}
}
