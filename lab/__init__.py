"""The host lab: the stack's inventory stood up as network-namespace hosts with their own root
filesystem and a real sshd, where every host step of the program runs for real over SSH."""
