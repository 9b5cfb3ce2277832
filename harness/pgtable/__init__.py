"""pgtable"""
