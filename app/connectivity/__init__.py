"""Connectivity: charger health from OCPP and the SIM platform (Cisco IoT Control Center)."""
