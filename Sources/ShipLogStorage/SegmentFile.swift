public import ShipLogFormat

/// One open segment file. Shared by the writer and readers; the descriptor closes when the
/// last reference goes, so retention can unlink a file a reader is still using.
public final class SegmentFile: Sendable {
    public let path: FilePath
    public let handle: any FileHandle
    public let header: SegmentHeader

    public init(path: FilePath, handle: any FileHandle, header: SegmentHeader) {
        self.path = path
        self.handle = handle
        self.header = header
    }

    public var baseLSN: LSN { header.baseLSN }
    public var fileName: String { path.lastComponent }

    /// Opens a segment and checks its header against its name.
    public static func open(at path: FilePath, fileSystem: any FileSystem, writable: Bool) throws(LogError) -> SegmentFile {
        let handle: any FileHandle
        do {
            handle = try fileSystem.openFile(at: path, options: writable ? [.read, .write] : [.read])
        } catch { throw .io(error) }
        let bytes: [UInt8]
        do { bytes = try handle.read(count: SegmentHeader.byteCount, fromAbsoluteOffset: 0) } catch { throw .io(error) }
        let header: SegmentHeader
        do {
            header = try SegmentHeader.decode(bytes)
        } catch {
            throw .corruption(file: path.lastComponent, offset: 0, lsnRange: "unknown", reason: error.description)
        }
        if let named = SegmentName.baseLSN(fromFileName: path.lastComponent), named != header.baseLSN {
            throw .corruption(
                file: path.lastComponent, offset: 16, lsnRange: "\(header.baseLSN)...",
                reason: "header base LSN \(header.baseLSN) does not match the file name")
        }
        return SegmentFile(path: path, handle: handle, header: header)
    }

    /// Reads the footer of a sealed segment, or `nil` when the file does not end with a
    /// well-formed footer trailer. Throws when a trailer is there but the footer is damaged.
    public func readFooter() throws(LogError) -> SegmentFooter? {
        do {
            let size = try handle.size()
            guard size >= Int64(SegmentHeader.byteCount + SegmentFooter.fixedByteCount + SegmentFooter.trailerByteCount)
            else { return nil }
            let trailer = try handle.read(
                count: SegmentFooter.trailerByteCount, fromAbsoluteOffset: size - Int64(SegmentFooter.trailerByteCount))
            guard let length = trailer.withUnsafeBytes({ SegmentFooter.footerLength(fromTrailer: $0) }),
                Int64(length) <= size - Int64(SegmentHeader.byteCount)
            else { return nil }
            let bytes = try handle.read(count: length, fromAbsoluteOffset: size - Int64(length))
            let start = size - Int64(length)
            let result = bytes.withUnsafeBytes { raw in
                Result { () throws(SegmentDefect) in try SegmentFooter.decode(raw, baseLSN: baseLSN) }
            }
            switch result {
            case .success(let footer):
                guard footer.dataEnd == UInt64(start) else {
                    throw LogError.corruption(
                        file: fileName, offset: start, lsnRange: "\(baseLSN)...\(footer.lastLSN)",
                        reason: "footer says data ends at \(footer.dataEnd), footer starts at \(start)")
                }
                return footer
            case .failure(let defect):
                throw LogError.corruption(
                    file: fileName, offset: start, lsnRange: "\(baseLSN)...", reason: defect.description)
            }
        } catch let error as LogError {
            throw error
        } catch let error as FileSystemError {
            throw .io(error)
        } catch {
            throw .failed(underlying: "\(error)")
        }
    }
}

extension SegmentFile {
    /// Writes `header` at the start of a new, empty segment file, preallocates it as
    /// `options` say (where the file system can), and fdatasyncs it. The caller names the file
    /// and makes the name durable.
    public static func writeEmpty(_ header: SegmentHeader, to handle: any FileHandle, options: LogOptions) throws(FileSystemError) {
        try handle.write(header.encoded(), toAbsoluteOffset: 0)
        if options.preallocateSegments {
            do {
                try handle.preallocate(
                    fromAbsoluteOffset: Int64(SegmentHeader.byteCount),
                    length: options.segmentBytesMax - Int64(SegmentHeader.byteCount))
            } catch where error.isUnsupported {
                // The file system cannot preallocate; appends extend the file instead.
            }
        }
        try handle.synchronizeData()
    }
}
