"""The listening room: a local web page for a recommendation library (``musiczoo serve``)."""
