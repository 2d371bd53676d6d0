package transport

import (
	"math/bits"
	"sync"
)

// minBufShift makes 512 bytes the smallest pooled buffer: most client
// messages are small JSON requests.
const minBufShift = 9

// bufPool hands out read buffers by size class, powers of two from 512
// bytes up to MaxFrameBytes, so that a buffer is at most twice the bytes it
// holds and a connection between messages holds none.
type bufPool struct {
	classes []sync.Pool // classes[i] holds *[]byte of capacity 512<<i
}

func newBufPool(maxBytes int) bufPool {
	// The reader also asks for firstChunk bytes and the writer for
	// coalesceBytes, whatever the limit.
	return bufPool{classes: make([]sync.Pool, sizeClass(max(maxBytes, firstChunk, coalesceBytes))+1)}
}

// sizeClass is the smallest class whose buffers hold n bytes.
func sizeClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1) >> minBufShift)
}

// get returns an empty buffer with room for at least n bytes, n at most
// the pool's maximum. Pointers are pooled, not slices, so that put does
// not allocate.
func (p *bufPool) get(n int) *[]byte {
	i := sizeClass(n)
	if v, ok := p.classes[i].Get().(*[]byte); ok {
		return v
	}
	b := make([]byte, 0, 1<<(minBufShift+i))
	return &b
}

// getAny is get for any n: beyond the largest class it allocates a buffer
// that put will not keep.
func (p *bufPool) getAny(n int) *[]byte {
	if sizeClass(n) >= len(p.classes) {
		b := make([]byte, 0, n)
		return &b
	}
	return p.get(n)
}

// put returns a buffer from get. Its contents are dead from now on.
func (p *bufPool) put(b *[]byte) {
	i := sizeClass(cap(*b))
	if i >= len(p.classes) || cap(*b) != 1<<(minBufShift+i) {
		return
	}
	*b = (*b)[:0]
	p.classes[i].Put(b)
}
