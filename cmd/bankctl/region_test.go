package main

import (
	"slices"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func TestOrderByRegionPutsTheRegionsNodesFirst(t *testing.T) {
	members := []*bankdv1.Member{
		{NodeId: "n1", Region: "eu", ApiAddr: "10.0.0.1:7201"},
		{NodeId: "n2", Region: "us", ApiAddr: "10.0.0.2:7201"},
		{NodeId: "n3", Region: "ap", ApiAddr: "10.0.0.3:7201"},
		{NodeId: "n4", Region: "us", ApiAddr: "10.0.0.4:7201", Suffrage: "nonvoter"},
		{NodeId: "n5", Region: "us"}, // another Raft id of a node: no API address known
	}
	tests := []struct {
		name   string
		addrs  []string
		region string
		want   []string
	}{
		{"the region's nodes first, the rest in their order",
			[]string{"https://10.0.0.1:7201", "https://10.0.0.3:7201", "https://10.0.0.2:7201"}, "us",
			[]string{"https://10.0.0.2:7201", "https://10.0.0.4:7201", "https://10.0.0.1:7201", "https://10.0.0.3:7201"}},
		{"a region nobody is in keeps the order",
			[]string{"https://10.0.0.3:7201", "https://10.0.0.1:7201"}, "sa",
			[]string{"https://10.0.0.3:7201", "https://10.0.0.1:7201"}},
		{"the scheme of the node asked", []string{"http://10.0.0.1:7201"}, "ap",
			[]string{"http://10.0.0.3:7201", "http://10.0.0.1:7201"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := orderByRegion(tt.addrs, tt.addrs[0], members, tt.region)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("orderByRegion = %v, want %v", got, tt.want)
			}
		})
	}
}
