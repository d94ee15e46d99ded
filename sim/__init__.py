"""Simulator: a SimPy model of IoMT devices, network, hosts/pods, PQC costs and FL rounds."""
