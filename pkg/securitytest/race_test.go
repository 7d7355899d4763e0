//go:build race

package securitytest

// raceDetector is true under the race detector, which makes bcrypt some 13 times slower.
const raceDetector = true
