"""Finding meshes and being found: on the LAN over mDNS (lan.py), and choosing among what was found."""
