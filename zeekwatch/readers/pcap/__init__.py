"""pcap."""
