"""Helpers shared by the test suites: real servers on free local ports, audio fixtures."""
