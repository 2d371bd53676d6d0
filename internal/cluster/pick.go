package cluster

import "math/rand/v2"

// Pick chooses the gateway for a new client among nodes: two accepting
// nodes drawn at random, the one with more free capacity first (the power
// of two choices: nearly as good as always taking the emptiest node, but
// without every router sending every client to the same one between two
// heartbeats). The other is the second choice. ok is false when no node
// accepts clients.
//
// Free capacity is discounted by CPU load, so a node that is full of busy
// clients looks fuller than one of the same size full of idle ones.
func Pick(nodes []Status, r *rand.Rand) (primary, secondary Status, ok bool) {
	cands := make([]Status, 0, len(nodes))
	for _, n := range nodes {
		if n.Accepting() {
			cands = append(cands, n)
		}
	}
	switch len(cands) {
	case 0:
		return Status{}, Status{}, false
	case 1:
		return cands[0], Status{}, true
	}
	i := r.IntN(len(cands))
	j := r.IntN(len(cands) - 1)
	if j >= i {
		j++
	}
	a, b := cands[i], cands[j]
	if score(b) > score(a) {
		a, b = b, a
	}
	return a, b, true
}

func score(s Status) float64 {
	load := min(max(s.Load, 0), 1)
	return float64(s.Free()) * (1 - 0.5*load)
}
