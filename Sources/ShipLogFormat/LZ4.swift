internal import CLZ4

/// liblz4's block format: the codec of batch payloads.
public enum LZ4 {
    /// The largest output ``compress(_:into:)`` can produce for `count` input bytes.
    public static func compressBound(_ count: Int) -> Int {
        Int(LZ4_compressBound(Int32(clamping: count)))
    }

    /// Compresses `source` into `destination`, returning the compressed size, or `nil` when it
    /// does not fit (the caller then stores the block raw).
    public static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard source.count <= FormatLimits.batchUncompressedBytesMax, let src = source.baseAddress,
            let dst = destination.baseAddress
        else { return source.isEmpty ? 0 : nil }
        let written = LZ4_compress_default(
            src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(clamping: destination.count))
        return written > 0 ? Int(written) : nil
    }

    /// Decompresses `source` into `destination`, returning the number of bytes produced, or
    /// `nil` when `source` is not a well-formed block or its output does not fit.
    public static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard let src = source.baseAddress, let dst = destination.baseAddress,
            source.count <= FormatLimits.batchStoredBytesMax
        else { return nil }
        let produced = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(clamping: destination.count))
        return produced >= 0 ? Int(produced) : nil
    }
}
