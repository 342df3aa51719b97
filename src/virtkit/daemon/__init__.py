"""virtkitd: state (SQLite), one supervised process per VM in its own cgroup, the REST API and events."""
