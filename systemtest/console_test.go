package systemtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/bankd/bankd/console/consoletest"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestConsoleShowsALeaderKillLive opens the operator console of a follower in a real browser,
// SIGKILLs the leader's process, and waits for the cluster page to show the new leader by
// itself (server-sent events, no reload).
func TestConsoleShowsALeaderKillLive(t *testing.T) {
	browser := consoletest.Browser(t)
	c := startCluster(t, testcluster.Spec{})
	ctx := ctxFor(t, 3*time.Minute)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watched := followerOf(c, leader)
	oldLeader := c.Nodes[leader].ID
	shots := consoletest.NewShots(t)

	consoletest.Login(t, browser, c.URL(watched), testcluster.ReadToken)
	consoletest.WaitFor(t, browser, consoletest.StepTimeout, "the live status naming the leader",
		fmt.Sprintf(`document.querySelector("#cluster").getAttribute("data-updates") !== null && document.querySelector("#leader").textContent === %q`, oldLeader))
	// A mark that a reload would wipe: the new leader must reach this very page.
	consoletest.Eval[bool](t, browser, "mark the page", `window.bankdConsoleMark = true`)
	shots.Take(t, browser, "before-kill")

	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	consoletest.WaitFor(t, browser, 60*time.Second, "a new leader on the page",
		fmt.Sprintf(`(function () { var l = document.querySelector("#leader").textContent; return l !== %q && l !== "—" && l !== ""; })()`, oldLeader))
	shown := consoletest.Text(t, browser, "#leader")
	if !consoletest.Eval[bool](t, browser, "check the mark", `window.bankdConsoleMark === true`) {
		t.Fatal("the page was reloaded to show the new leader")
	}
	now, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Nodes[now].ID != shown {
		t.Fatalf("the page shows leader %s, the cluster reports %s", shown, c.Nodes[now].ID)
	}
	shots.Take(t, browser, "after-kill")
}
