//go:build !unix

package bench

// selfCPU is not measured on this system.
func selfCPU() float64 { return 0 }

// selfMaxRSS is not measured on this system.
func selfMaxRSS() int64 { return 0 }
