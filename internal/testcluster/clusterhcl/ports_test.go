package clusterhcl

import (
	"testing"
)

// TestPortsAvoidWhatWasHandedOut asks for ports right after releasing others, which the kernel
// may offer again: none of the second round may be one of the first. A test cluster once got
// node n1's gossip port as node n2's API port that way.
func TestPortsAvoidWhatWasHandedOut(t *testing.T) {
	for range 20 {
		first, err := FreePorts(30)
		if err != nil {
			t.Fatal(err)
		}
		second, err := FreePorts(30, first...)
		if err != nil {
			t.Fatal(err)
		}
		avoid := map[int]bool{}
		for _, p := range append(first, second...) {
			if avoid[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			avoid[p] = true
		}
		for range 10 {
			l, err := ListenAvoiding(avoid)
			if err != nil {
				t.Fatal(err)
			}
			// ListenAvoiding adds the port it took, so a repeat would have been refused above.
			_ = l.Close()
		}
		if len(avoid) != 70 {
			t.Fatalf("%d distinct ports, want 70", len(avoid))
		}
	}
}

func TestNodePortsReadsEveryAddress(t *testing.T) {
	got := NodePorts([]Node{{RaftAddr: "127.0.0.1:7001", GossipAddr: "127.0.0.1:7101", APIAddr: "127.0.0.1:7201"}, {RaftAddr: "bad"}})
	if len(got) != 3 || got[0] != 7001 || got[1] != 7101 || got[2] != 7201 {
		t.Fatalf("NodePorts = %v, want [7001 7101 7201]", got)
	}
}
