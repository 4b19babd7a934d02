"""One session: windowing, speech, faces, the scorer, the live pipeline and its builder."""
