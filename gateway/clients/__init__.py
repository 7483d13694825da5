"""One thin client per external system, each with a timeout and its own error."""
