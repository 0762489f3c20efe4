// Package robustness holds kvant's end-to-end failure tests: kills,
// corruption, full disks. It has no code of its own; its tests build the
// real binaries and attack them and the files they write.
//
// The kill tests run a few kills on a small checkpoint by default; set
// KVANT_ROBUSTNESS_LONG=1 for twenty kills of each command on a ~300 MB
// checkpoint.
package robustness
