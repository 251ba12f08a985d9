package proxy

import "bytes"

// NumSlots is the number of Redis Cluster hash slots.
const NumSlots = 16384

// crcTable is CRC16-CCITT (XMODEM: polynomial 0x1021, init 0), the variant
// Redis Cluster uses; a table keeps the per-command cost to one lookup per
// key byte.
var crcTable = func() [256]uint16 {
	var t [256]uint16
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

// Slot returns the hash slot of key exactly as Redis Cluster computes it:
// only the content of the first {...} is hashed when it is non-empty, so
// that callers can co-locate related keys.
func Slot(key []byte) int {
	if open := bytes.IndexByte(key, '{'); open >= 0 {
		if end := bytes.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16(key) % NumSlots)
}
